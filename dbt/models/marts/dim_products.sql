-- Product dimension: the REST API is the catalogue of record for its products; products.csv adds the
-- store's own products (a product_id present in both takes the API row).
with api as (
    select product_id, product_name, category, price, description, image_url, rating_rate, rating_count,
           'products_api' as source
    from {{ ref('stg_api_products') }}
),

csv as (
    select product_id, product_name, category, price,
           cast(null as {{ dbt.type_string() }}) as description,
           cast(null as {{ dbt.type_string() }}) as image_url,
           cast(null as {{ dbt.type_float() }}) as rating_rate,
           cast(null as {{ dbt.type_bigint() }}) as rating_count,
           'products_csv' as source
    from {{ ref('stg_products') }}
    where product_id not in (select product_id from api)
)

select * from api
union all
select * from csv
