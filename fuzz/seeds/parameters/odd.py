import numpy as np
a = np.arange(3)  # an array
b = {'k': 1}
c = 1 + 2
d, e = 1, 2
f = f"x{c}"
g = 'unterminated
h: Path = 'data.csv'
i: Optional[int] = None  # optional count
j = [1, 'a']
k = 99999999999999999999999
l: int = 'text'
m = [
    1,  # first
    2,
]  # multi-line list
n = """multi
line"""
o = b'bytes'
p = 1.5e3
q = (4)
r: float | None = 2
s: typing.List[str] = ("a", "b")
t = r'C:\data\n'  # a raw path
u = 'a\tb\x41\u00e9\U0001F600\101'
v = 0x1F; w = -1_000
x = 1
x = 2  # reassigned
