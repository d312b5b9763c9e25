"""healthscore.evaluation"""
