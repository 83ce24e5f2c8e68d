"""bert4rec: sequential recommendation with BERT4Rec, honestly evaluated and easy to serve."""

__version__ = "0.1.0"
