package entity

import (
	"slices"
	"testing"
)

func TestContractTypesSorted(t *testing.T) {
	if !slices.IsSorted(ContractTypes) {
		t.Errorf("not sorted: %v", ContractTypes)
	}
}

func TestActiveSet(t *testing.T) {
	for _, types := range [][]string{nil, {}} {
		if set := ActiveSet(types); set != nil {
			t.Errorf("ActiveSet(%#v) = %v, want nil (every type)", types, set)
		}
	}
	set := ActiveSet([]string{TypeHost, TypeInstance, TypeHost})
	if len(set) != 2 || !set[TypeHost] || !set[TypeInstance] || set[TypeZone] {
		t.Errorf("ActiveSet = %v", set)
	}
}
