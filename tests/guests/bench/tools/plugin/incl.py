# Inclusive and exclusive instructions per function from a tbtrace.so trace, with call
# stacks rebuilt from each block's last instruction (call/syscall/int push, ret/iret/sysret
# pop to the frame whose return address is where execution went).
#
#   python3 incl.py TRACE [N [REGEX]]      (N rows; only functions matching REGEX)
#   UNDER=<function> python3 incl.py ...   (only instructions with that function on the stack)
#
# ELFs: HVELF (hypervisor, default target/xenia/xenia.elf), KELF (guest kernel, default
# target/xenia/dom0.elf), UELF and UBIAS (a user program and its load address, default xl
# at the dom0 kernel's PIE base). Disassemblies are cached next to the trace.
import os, sys, struct, subprocess, bisect, collections, re, pickle
ROOT=os.environ.get("ROOT",".")
ELFS=[(os.environ.get("HVELF",ROOT+"/target/xenia/xenia.elf"),0),
      (os.environ.get("KELF",ROOT+"/target/xenia/dom0.elf"),0),
      (os.environ.get("UELF",ROOT+"/target/x86_64-unknown-linux-musl/release/xl"),int(os.environ.get("UBIAS","0x555555554000"),16))]
TRACE=sys.argv[1]
def disasm(elf,bias):
    cache=os.path.join(os.path.dirname(os.path.abspath(TRACE)),"dis.%s.%d.pkl"%(os.path.basename(elf),os.path.getmtime(elf)))
    if os.path.exists(cache): return pickle.load(open(cache,"rb"))
    ins={}; funcs=[]
    p=subprocess.Popen(["objdump","-d","--no-show-raw-insn","-C",elf],stdout=subprocess.PIPE,text=True)
    fre=re.compile(r"^([0-9a-f]+) <(.*)>:$"); ire=re.compile(r"^\s*([0-9a-f]+):\s+(\S+)")
    prev=None
    for l in p.stdout:
        m=ire.match(l)
        if m:
            a=int(m.group(1),16)+bias; mn=m.group(2)
            if prev is not None: ins[prev[0]]=(prev[1],a-prev[0])
            prev=(a,mn); continue
        m=fre.match(l)
        if m:
            if prev is not None: ins[prev[0]]=(prev[1],1); prev=None
            funcs.append((int(m.group(1),16)+bias,m.group(2)[:100]))
    if prev is not None: ins[prev[0]]=(prev[1],1)
    funcs.sort()
    r=(ins,funcs); pickle.dump(r,open(cache,"wb")); return r
INS={}; FA=[]; FN=[]
for e,b in ELFS:
    i,f=disasm(e,b); INS.update(i)
    for a,n in f: FA.append(a); FN.append(n)
o=sorted(range(len(FA)),key=lambda k:FA[k]); FA=[FA[k] for k in o]; FN=[FN[k] for k in o]
def fn(a):
    i=bisect.bisect_right(FA,a)-1
    return FN[i] if i>=0 else "?%x"%a
def last(v,n):
    a=v
    for _ in range(n-1):
        x=INS.get(a)
        if not x: return None,None
        a+=x[1]
    x=INS.get(a)
    return (x[0],a+x[1]) if x else (None,None)
data=open(TRACE,"rb").read()
recs=[struct.unpack_from("<QI",data,i*16) for i in range(len(data)//16)]
UNDER=os.environ.get('UNDER');under_total=[0]
incl=collections.Counter(); excl=collections.Counter()
stack=[]  # list of [fname, retaddr]
pending=None
total=0
for idx,(v,n) in enumerate(recs):
    f=fn(v)
    if pending:
        kind,ret=pending
        if kind=="push": stack.append([f,ret])
        elif kind=="pop":
            for j in range(len(stack)-1,0,-1):
                if stack[j][1]==v: del stack[j:]; break
        pending=None
    if not stack: stack.append([f,None])
    stack[-1][0]=f
    if len(stack)>400: del stack[1:200]
    total+=n
    excl[f]+=n
    if UNDER and not any(s_[0]==UNDER for s_ in stack): continue
    under_total[0]+=n
    seen=set()
    for s_ in stack:
        if s_[0] not in seen: seen.add(s_[0]); incl[s_[0]]+=n
    mn,nxt=last(v,n)
    if mn is None: continue
    if mn.startswith("call") or mn=="syscall" or mn.startswith("int") and mn!="int3":
        pending=("push",nxt)
    elif mn.startswith("ret") or mn.startswith("iret") or mn.startswith("sysret"):
        pending=("pop",None)
print("total",total,"TBs",len(recs),"under",under_total[0])
N=int(sys.argv[2]) if len(sys.argv)>2 else 60
flt=sys.argv[3] if len(sys.argv)>3 else ""
for f,c in incl.most_common(100000):
    if flt and not re.search(flt,f): continue
    print("%9d %5.1f%%  excl %8d  %s"%(c,100*c/total,excl[f],f[:110]))
    N-=1
    if N==0: break
