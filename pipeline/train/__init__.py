"""Training stage: driver side (preflight, launch, tailing, registration) and what each Horovod rank runs."""
