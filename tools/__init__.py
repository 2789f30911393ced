"""Development tools kept out of the product package: the lock check, the synthetic review
generator (benches, tests) and the scripts that regenerate the bundled demo data."""
