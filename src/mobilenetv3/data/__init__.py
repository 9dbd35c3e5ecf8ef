"""Images and labels: slim's preprocessing, image folders and lists, ImageNet label sets.
"""
