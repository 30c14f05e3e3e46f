-- SCD type 2 invariant: every customer of the snapshot has exactly one current row (dbt_valid_to is null).
select customer_id, sum(case when dbt_valid_to is null then 1 else 0 end) as current_rows
from {{ ref('customers_snapshot') }}
group by customer_id
having sum(case when dbt_valid_to is null then 1 else 0 end) <> 1
