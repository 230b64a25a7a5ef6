"""The Wireflow simulator: `routes` (API + fake CDN), `workflows` (the catalog it serves), `options`
(its command-line knobs and description)."""
