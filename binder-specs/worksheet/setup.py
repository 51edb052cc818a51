from setuptools import setup, find_packages

setup(name="growth", version="0.1", packages=find_packages("lib"), package_dir={"": "lib"})
