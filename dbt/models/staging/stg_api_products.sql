-- Products from the REST API (id -> product_id, title -> product_name renamed by the cleaning step).
select
    product_id,
    product_name,
    description,
    category,
    price,
    image_url,
    rating_rate,
    rating_count,
    _ingested_at as ingested_at
from {{ source('raw_orders', 'api_products') }}
