-- Product dimension: the REST API is the catalogue of record for its products; products.csv adds the
-- store's own products (a product_id present in both takes the API row). Either source may be absent
-- (its staging view is then empty).
with api as (
    select product_id, product_name, category, price, description, image_url, rating_rate, rating_count,
           'products_api' as source
    from {{ ref('stg_api_products') }}
),

csv as (
    select p.product_id, p.product_name, p.category, p.price,
           cast(null as {{ string_type(4096) }}) as description,
           cast(null as {{ string_type(1024) }}) as image_url,
           cast(null as {{ float_type() }}) as rating_rate,
           cast(null as bigint) as rating_count,
           'products_csv' as source
    from {{ ref('stg_products') }} as p
    -- not exists, never `not in (subquery)`: one null product_id there would drop every csv row
    where not exists (select 1 from api where api.product_id = p.product_id)
),

unioned as (
    select * from api
    union all
    select * from csv
)

select
    cast(product_id as {{ string_type(64) }}) as product_id,
    cast(product_name as {{ string_type(256) }}) as product_name,
    cast(category as {{ string_type(128) }}) as category,
    cast(price as {{ money_type() }}) as price,
    cast(description as {{ string_type(4096) }}) as description,
    cast(image_url as {{ string_type(1024) }}) as image_url,
    cast(rating_rate as {{ float_type() }}) as rating_rate,
    cast(rating_count as bigint) as rating_count,
    cast(source as {{ string_type(16) }}) as source
from unioned
