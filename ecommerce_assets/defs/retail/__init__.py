"""Online Retail warehouse: the UCI Online Retail files -> cleaned Parquet -> quality gates -> star schema."""
