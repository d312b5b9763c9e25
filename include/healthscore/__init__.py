"""healthscore: customer health scores from CRM, support, billing and product data."""

__version__ = "0.1.0"
