"""Orders ELT: landed orders/customers/products files and the products API -> warehouse -> dbt marts."""
