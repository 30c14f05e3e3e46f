-- One row per order (its latest version, chosen by the cleaning step), every column cast to its type.
-- ingested_at is the arrival of the order's file: it drives the incremental fct_orders.
select
    cast(order_id as {{ string_type(64) }}) as order_id,
    cast(customer_id as {{ string_type(64) }}) as customer_id,
    cast(product_id as {{ string_type(64) }}) as product_id,
    cast(order_date as date) as order_date,
    cast(quantity as bigint) as quantity,
    cast(amount as {{ money_type() }}) as amount,
    cast(status as {{ string_type(32) }}) as status,
    cast(updated_at as {{ timestamp_type() }}) as updated_at,
    cast(_ingested_at as {{ timestamp_type() }}) as ingested_at,
    cast(_source_file as {{ string_type(1024) }}) as source_file
from {{ source('raw_orders', 'orders') }}
