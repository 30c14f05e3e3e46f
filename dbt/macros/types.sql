{#- Explicit column types, the same logical type on every adapter (staging casts every column to one). -#}

{#- Text of at most n characters: varchar(n) (Redshift would otherwise make every string VARCHAR(65535));
    plain varchar on Athena, whose Iceberg tables take no length. -#}
{% macro string_type(n) -%}
    {%- if target.type == 'athena' -%}varchar{%- else -%}varchar({{ n }}){%- endif -%}
{%- endmacro %}

{#- Money: an exact decimal. -#}
{% macro money_type() -%}decimal(18, 2){%- endmacro %}

{#- A point in time without time zone (UTC by convention): every *_at column. -#}
{% macro timestamp_type() -%}
    {%- if target.type == 'athena' -%}timestamp(6){%- else -%}timestamp{%- endif -%}
{%- endmacro %}

{#- The beginning of time: where a customer's first version opens, so point-in-time joins find it. -#}
{% macro beginning_of_time() -%}
    cast('1900-01-01 00:00:00' as {{ timestamp_type() }})
{%- endmacro %}

{#- A binary floating-point number (ratings). -#}
{% macro float_type() -%}
    {%- if target.type == 'athena' -%}double{%- else -%}double precision{%- endif -%}
{%- endmacro %}
