"""`nurture bench`: a synthetic warehouse of a given size, and what each stage of a
program costs on it (see `measure`)."""
