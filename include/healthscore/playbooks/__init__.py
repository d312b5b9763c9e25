"""healthscore.playbooks"""
