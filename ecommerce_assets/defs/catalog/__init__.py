"""Seller catalog sourcing: catalog API pages -> cleaned snapshots -> ``gold.amazon_data`` -> matches with the
distributor's inventory -> a sourcing report the buyer opens."""
