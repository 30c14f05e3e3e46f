-- One row per order (the latest version). IDs are text; ingested_at drives the incremental fact.
select
    order_id,
    customer_id,
    product_id,
    order_date,
    quantity,
    amount,
    status,
    updated_at,
    _ingested_at as ingested_at,
    _source_file as source_file
from {{ source('raw_orders', 'orders') }}
