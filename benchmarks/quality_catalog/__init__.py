"""The quality benchmark's item table: the imported datasets' items as a catalog ``recommend()`` can serve from."""
