-- Products from the REST API (id -> product_id, title -> product_name renamed by the cleaning step).
-- Optional: with no API configured (or before its first fetch) this view is empty.
select
    cast(product_id as {{ string_type(64) }}) as product_id,
    cast(product_name as {{ string_type(256) }}) as product_name,
    cast(description as {{ string_type(4096) }}) as description,
    cast(category as {{ string_type(128) }}) as category,
    cast(price as {{ money_type() }}) as price,
    cast(image_url as {{ string_type(1024) }}) as image_url,
    cast(rating_rate as {{ float_type() }}) as rating_rate,
    cast(rating_count as bigint) as rating_count,
    cast(_ingested_at as {{ timestamp_type() }}) as ingested_at
from {{ optional_source('raw_orders', 'api_products', {
    'product_id': 'varchar', 'product_name': 'varchar', 'description': 'varchar', 'category': 'varchar',
    'price': money_type(), 'image_url': 'varchar', 'rating_rate': float_type(), 'rating_count': 'bigint',
    '_ingested_at': timestamp_type()}) }} as src
