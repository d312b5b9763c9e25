"""healthscore.sandbox"""
