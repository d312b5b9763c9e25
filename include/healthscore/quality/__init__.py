"""healthscore.quality"""
