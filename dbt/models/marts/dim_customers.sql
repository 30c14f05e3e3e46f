-- SCD type 2 customer dimension: one row per customer version (city/email history from the snapshot).
-- customer_name is a type 1 attribute: every version shows the current name.
select
    s.dbt_scd_id as customer_version_id,
    s.customer_id,
    coalesce(c.customer_name, s.customer_name) as customer_name,
    s.email,
    s.city,
    s.dbt_valid_from as valid_from,
    s.dbt_valid_to as valid_to,
    s.dbt_valid_to is null as is_current
from {{ ref('customers_snapshot') }} as s
left join {{ ref('stg_customers') }} as c
    on c.customer_id = s.customer_id
