{#- One-off migration of a customers_snapshot built before it used arrival time (`updated_at: ingested_at`),
    whose dbt_valid_from / dbt_valid_to / dbt_updated_at carry the time dbt ran:

        dbt run-operation migrate_customers_snapshot_to_arrival_time --project-dir dbt --profiles-dir dbt [--target T]

    Every row keeps its dbt_scd_id and takes the arrival time it already carries in its ingested_at column:
    dbt_valid_from = dbt_updated_at = ingested_at, and dbt_valid_to = the next version's ingested_at (null for
    the current row). fct_orders is dropped, so the next `dbt build` rebuilds it in full with the customer
    versions valid at each order date. Running it again changes nothing. On Athena the Hive snapshot is
    rewritten as an Iceberg table. -#}
{% macro migrate_customers_snapshot_to_arrival_time(dry_run=false) %}
    {%- set snapshot = ref('customers_snapshot') -%}
    {%- if load_relation(snapshot) is none -%}
        {{ log("nothing to migrate: " ~ snapshot ~ " does not exist (the next dbt build creates it in arrival time)", info=true) }}
        {{ return(none) }}
    {%- endif -%}
    {%- set corrected -%}
        select
            customer_id, customer_name, email, city, ingested_at,
            dbt_scd_id,
            ingested_at as dbt_updated_at,
            ingested_at as dbt_valid_from,
            case when dbt_valid_to is null then null
                 else lead(ingested_at) over (partition by customer_id order by dbt_valid_from, ingested_at)
            end as dbt_valid_to
        from {{ snapshot }}
    {%- endset -%}
    {%- if target.type == 'athena' -%}
        {%- set tmp = api.Relation.create(database=snapshot.database, schema=snapshot.schema,
                                          identifier=snapshot.identifier ~ '__arrival_time') -%}
        {%- set statements = [
            "drop table if exists " ~ tmp.render_hive(),
            "create table " ~ tmp ~ " with (table_type = 'ICEBERG', is_external = false, location = '"
                ~ adapter.generate_s3_location(tmp) ~ "') as " ~ corrected,
            "drop table " ~ snapshot.render_hive(),
            "create table " ~ snapshot ~ " with (table_type = 'ICEBERG', is_external = false, location = '"
                ~ adapter.generate_s3_location(snapshot) ~ "') as select * from " ~ tmp,
            "drop table " ~ tmp.render_hive(),
        ] -%}
    {%- else -%}
        {%- set statements = [
            "update " ~ snapshot ~ " set dbt_valid_from = c.dbt_valid_from, dbt_valid_to = c.dbt_valid_to, "
                ~ "dbt_updated_at = c.dbt_updated_at from (" ~ corrected ~ ") as c "
                ~ "where " ~ snapshot ~ ".dbt_scd_id = c.dbt_scd_id",
        ] -%}
    {%- endif -%}
    {%- set fct = load_relation(ref('fct_orders')) -%}
    {%- if fct is not none -%}
        {%- do statements.append("drop table " ~ (fct.render_hive() if target.type == 'athena' else fct)) -%}
    {%- endif -%}
    {%- for sql in statements -%}
        {{ log("migrate_customers_snapshot_to_arrival_time: " ~ (sql | replace('\n', ' ')), info=true) }}
        {%- if not dry_run -%}{%- do run_query(sql) -%}{%- endif -%}
    {%- endfor -%}
    {%- if not dry_run and target.type != 'athena' -%}{%- do adapter.commit() -%}{%- endif -%}
    {{ log("migrated " ~ snapshot ~ " to arrival time" ~ ("; dropped " ~ fct ~ " (the next dbt build rebuilds it)" if fct is not none else ""), info=true) }}
{% endmacro %}
