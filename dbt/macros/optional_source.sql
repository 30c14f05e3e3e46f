{#- A source that may never have been loaded (products.csv files, the products API, customers.json):
    the relation itself when it exists, else an empty relation with the same columns, so the staging
    model and every mart downstream build from whatever has landed.

    `columns` maps each raw column the staging model reads to its type. The check runs when dbt executes
    (never at parse); with `--vars '{offline_compile: true}'` (dbt compile without a warehouse) the source
    is assumed present. -#}
{% macro optional_source(source_name, table_name, columns) -%}
    {%- set relation = source(source_name, table_name) -%}
    {%- if not execute or var('offline_compile', false) -%}
        {{ relation }}
    {%- elif load_relation(relation) is not none -%}
        {{ relation }}
    {%- else -%}
        {%- do log("source " ~ source_name ~ "." ~ table_name ~ " has not been loaded yet: reading it as empty", info=true) -%}
        (select
        {%- for name, type in columns.items() %}
            cast(null as {{ type }}) as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
        where 1 = 0)
    {%- endif -%}
{%- endmacro %}
