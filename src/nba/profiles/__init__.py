"""Customer profiles: which ids are one person (identity), and what is known about them."""
