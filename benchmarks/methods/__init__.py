"""The method adapters the runners drive (`base.Method`), one module per family, named in `registry`."""
