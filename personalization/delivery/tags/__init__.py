"""Template nodes of the delivery tags (``{% load personalization %}`` registers them): one module per tag family.

The nodes parse their arguments and render; what they show comes from the delivery services (``item_lists``,
``blocks``, ``layouts``), which the page-hydration API calls as well.
"""
