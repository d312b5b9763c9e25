"""healthscore.reports"""
