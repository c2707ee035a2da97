"""The gate step: turns the compare summary's verdict into the pipeline's branch (register or
not). May import `components.common` and `components.spec`."""
