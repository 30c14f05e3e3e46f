-- Products from the landed products.csv files.
select
    product_id,
    product_name,
    category,
    price,
    _ingested_at as ingested_at
from {{ source('raw_orders', 'products') }}
