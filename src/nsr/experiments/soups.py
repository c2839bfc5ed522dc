"""Soup experiments (learn_from_soup, mixed_soup, soup_trajectories)."""
