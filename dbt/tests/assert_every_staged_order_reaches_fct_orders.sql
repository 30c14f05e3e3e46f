{{ config(meta={"dagster": {"ref": {"name": "fct_orders"}}}) }}
-- No order lost: every (order_id, ingested_at) of stg_orders is in fct_orders. A row here is an order
-- version the incremental filter never read (e.g. a file committed with an arrival stamp older than the
-- newest one already in the table, beyond the look-back).
select s.order_id, s.ingested_at
from {{ ref('stg_orders') }} as s
left join {{ ref('fct_orders') }} as f
    on f.order_id = s.order_id
    and f.ingested_at = s.ingested_at
where f.order_id is null
