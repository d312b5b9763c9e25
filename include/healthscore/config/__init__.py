"""healthscore.config"""
