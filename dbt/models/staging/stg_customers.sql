-- One row per customer: the latest landed version (emails already lower-cased by the cleaning step).
select
    customer_id,
    customer_name,
    email,
    city,
    _ingested_at as ingested_at
from {{ source('raw_orders', 'customers') }}
