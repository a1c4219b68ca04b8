"""PIR: person-specific reenactment with a parametric implicit face (Huang et al., CVPR 2023).

Networks so far: component A (`models.pir_audio2exp`), component B (`models.triplane`, geometry in
`talking_heads.rendering`), component C (`models.pir_renderer`) and their sizes per variant
(`sizes`). The package declares no SYSTEM until its stages exist.
"""
