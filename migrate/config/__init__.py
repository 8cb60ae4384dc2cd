"""Registry configuration files as regmig input, and registry configuration as regmig output."""
