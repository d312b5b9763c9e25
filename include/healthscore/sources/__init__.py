"""healthscore.sources"""
