{#- Schema names per environment, so dev, CI and production never collide on a shared warehouse.

    A model's +schema (staging, marts, snapshots) is combined with:
    * the environment, env var ECOMMERCE_DBT_ENV: `prod` (what the Dagster assets run unless told
      otherwise) keeps the bare name (`marts`); any other value prefixes it (`ci_marts`, `dev_alice_marts`).
      dbt run by hand defaults to `dev`.
    * on Athena, the target's schema (ECOMMERCE_ATHENA_SCHEMA, default `ecommerce`) as a prefix: Glue
      databases are account-wide, so the setting names them (`ecommerce_marts`, `ecommerce_ci_marts`).
    A node without +schema goes to the target's schema. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {%- set parts = [] -%}
        {%- if target.type == 'athena' -%}{%- do parts.append(target.schema | trim) -%}{%- endif -%}
        {%- set env = dbt_env() -%}
        {%- if env != 'prod' -%}{%- do parts.append(env) -%}{%- endif -%}
        {%- do parts.append(custom_schema_name | trim) -%}
        {{ parts | join('_') }}
    {%- endif -%}
{%- endmacro %}

{#- The environment the schemas belong to: ECOMMERCE_DBT_ENV (prod|ci|dev|dev_<name>), default dev. -#}
{% macro dbt_env() -%}
    {%- set env = env_var('ECOMMERCE_DBT_ENV', 'dev') | trim | lower -%}
    {%- if not modules.re.match('^[a-z][a-z0-9_]*$', env) -%}
        {{ exceptions.raise_compiler_error("ECOMMERCE_DBT_ENV must be a lower-case identifier (prod, ci, dev, dev_<name>); got '" ~ env ~ "'") }}
    {%- endif -%}
    {{ return(env) }}
{%- endmacro %}
