-- One row per customer: its latest landed version (emails already lower-cased by the cleaning step).
-- customers.json is optional: until one lands this view is empty (every order's customer then unknown).
select
    cast(customer_id as {{ string_type(64) }}) as customer_id,
    cast(customer_name as {{ string_type(256) }}) as customer_name,
    cast(email as {{ string_type(320) }}) as email,
    cast(city as {{ string_type(128) }}) as city,
    cast(_ingested_at as {{ timestamp_type() }}) as ingested_at
from {{ optional_source('raw_orders', 'customers', {
    'customer_id': 'varchar', 'customer_name': 'varchar', 'email': 'varchar', 'city': 'varchar',
    '_ingested_at': timestamp_type()}) }} as src
