-- Products from the landed products.csv files. Optional: a store that sells only the API's catalogue
-- lands none, and this view is then empty.
select
    cast(product_id as {{ string_type(64) }}) as product_id,
    cast(product_name as {{ string_type(256) }}) as product_name,
    cast(category as {{ string_type(128) }}) as category,
    cast(price as {{ money_type() }}) as price,
    cast(_ingested_at as {{ timestamp_type() }}) as ingested_at
from {{ optional_source('raw_orders', 'products', {
    'product_id': 'varchar', 'product_name': 'varchar', 'category': 'varchar', 'price': money_type(),
    '_ingested_at': timestamp_type()}) }} as src
