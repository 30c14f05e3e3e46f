"""Running the graph without the daemon: the catch-up behind ``ecommerce-assets run``, its summary lines, and
``doctor``'s checks of a configuration."""
