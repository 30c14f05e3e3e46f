-- SCD type 2 invariant: a customer's validity ranges [dbt_valid_from, dbt_valid_to) are non-empty and never
-- overlap (an open range ends at infinity). A change committed with an arrival stamp older than the current
-- version's would show here.
with ranges as (
    select customer_id, dbt_scd_id, dbt_valid_from as valid_from,
           coalesce(dbt_valid_to, cast('9999-12-31 00:00:00' as {{ timestamp_type() }})) as valid_to
    from {{ ref('customers_snapshot') }}
)

select a.customer_id, a.dbt_scd_id, a.valid_from, a.valid_to, 'empty range' as problem
from ranges as a
where a.valid_to <= a.valid_from
union all
select a.customer_id, a.dbt_scd_id, a.valid_from, a.valid_to, 'overlaps ' || b.dbt_scd_id as problem
from ranges as a
inner join ranges as b
    on a.customer_id = b.customer_id
    and a.dbt_scd_id < b.dbt_scd_id
    and a.valid_from < b.valid_to
    and b.valid_from < a.valid_to
