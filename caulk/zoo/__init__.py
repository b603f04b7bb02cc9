"""caulk's zoo: small timm backbones pre-trained over a source size m, stored by recipe.

``models`` registers the architectures with timm, ``sources`` generates the glyph source task,
``store`` names, verifies and locks entries, ``build`` pre-trains a missing one.
"""
