"""healthscore.scoring"""
