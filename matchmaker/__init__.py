"""matchmaker"""
