{#- Incremental on order_id: each run takes the orders whose file arrived after the newest one already
    in the table; a late update of an existing order replaces its row (delete+insert on duckdb,
    PostgreSQL and Redshift; merge on Athena/Iceberg); re-running adds nothing. An order whose customer
    is unknown is kept (the relationships test warns). -#}
{{ config(
    materialized='incremental',
    unique_key='order_id',
    incremental_strategy=('merge' if target.type == 'athena' else 'delete+insert'),
    table_type=('iceberg' if target.type == 'athena' else none),
    on_schema_change='fail'
) }}

select
    order_id,
    customer_id,
    product_id,
    order_date,
    quantity,
    amount,
    status,
    updated_at,
    ingested_at
from {{ ref('stg_orders') }}
{% if is_incremental() %}
where ingested_at > (select coalesce(max(ingested_at), cast('1900-01-01' as timestamp)) from {{ this }})
{% endif %}
