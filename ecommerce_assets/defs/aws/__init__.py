"""AWS-only definitions (present only when ``ECOMMERCE_ENV=aws``): Glue registration, transforms in Lambda."""
