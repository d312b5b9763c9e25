"""healthscore.warehouse"""
