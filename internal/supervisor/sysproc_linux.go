package supervisor

import "syscall"

// sysProcAttr puts each child in its own process group, so a Ctrl-C at the
// terminal reaches only the supervisor, which stops the children in order;
// and has the kernel kill the child if the supervisor dies without stopping
// it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
