"""Data: video and image decoding (``video``), clip placement and cutting (``clips``), preprocessing
(``transforms``) and the synthetic benchmark (``synthetic``)."""
