-- SCD type 2 customer dimension: one row per customer version, validity in arrival time.
-- * valid_from: the arrival time of the file that brought the version; the first version of a customer is
--   open from the beginning of time (1900-01-01), so an order placed before the customer's first file
--   arrived still finds it. recorded_at keeps the first version's real arrival.
-- * valid_to: the arrival time of the next version (null while current).
-- customer_name is a type 1 attribute: every version shows the current name.
with versions as (
    select
        s.*,
        row_number() over (partition by s.customer_id order by s.dbt_valid_from) as version_number
    from {{ ref('customers_snapshot') }} as s
)

select
    cast(v.dbt_scd_id as {{ string_type(64) }}) as customer_version_id,
    cast(v.customer_id as {{ string_type(64) }}) as customer_id,
    cast(v.version_number as integer) as version_number,
    cast(coalesce(c.customer_name, v.customer_name) as {{ string_type(256) }}) as customer_name,
    cast(v.email as {{ string_type(320) }}) as email,
    cast(v.city as {{ string_type(128) }}) as city,
    cast(case when v.version_number = 1 then {{ beginning_of_time() }} else v.dbt_valid_from end
         as {{ timestamp_type() }}) as valid_from,
    cast(v.dbt_valid_to as {{ timestamp_type() }}) as valid_to,
    cast(v.dbt_valid_from as {{ timestamp_type() }}) as recorded_at,
    v.dbt_valid_to is null as is_current
from versions as v
left join {{ ref('stg_customers') }} as c
    on c.customer_id = v.customer_id
