-- SCD type 2 invariant on the mart: every customer has exactly one current row in dim_customers.
select customer_id, count(*) as current_rows
from {{ ref('dim_customers') }}
group by customer_id
having sum(case when is_current then 1 else 0 end) <> 1
